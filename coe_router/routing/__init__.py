"""Routing: which task a query belongs to (classifiers), which experts serve a task (task map, live expert pool),
asking one expert (expert_call), splitting a request into subtasks (plans) and local likelihood scoring (scoring)."""
