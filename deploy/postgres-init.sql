-- The Agent Server (profile agent-server) keeps its own tables (assistants, threads, runs, its checkpoints) in a
-- database of its own, apart from the checkpoint tables `coe serve` creates in `coe`.
CREATE DATABASE agent_server;
