"""The planner's and the synthesizer's prompts (CCoE expert planning).

Placeholders: {task_list} configured tasks with descriptions, {query} the user's request, {max_steps} the step
limit, {single_clause} the instruction for requests one expert can answer (auto mode), {example_first} and
{example_second} task names used in the worked example (a concrete example keeps small models from copying a
placeholder), {steps} numbered subtasks with their outputs (synthesizer).
"""

PLANNER_PROMPT = (
    "You plan work for a team of expert models. Split the request below into the fewest ordered subtasks, at most "
    "{max_steps}, each answerable by one expert. A later subtask may use the results of earlier ones. Copy each "
    "subtask's text from the words of the request.\n"
    "Tasks the experts cover: {task_list}.\n"
    "{single_clause}"
    "Reply with JSON only.\n\n"
    "Example request: Convert 100 degrees Celsius to Fahrenheit, then write a short poem about it.\n"
    'Example reply: {{"subtasks": [{{"text": "Convert 100 degrees Celsius to Fahrenheit.", "task": "{example_first}"}}, '
    '{{"text": "Write a short poem about it.", "task": "{example_second}"}}]}}\n\n'
    "Request: {query}\n"
    "Reply:"
)

SINGLE_CLAUSE_AUTO = "If one expert can handle the whole request, return exactly one subtask: the request itself.\n"

SYNTHESIZER_PROMPT = (
    "Experts worked through the request below step by step. Using their results, write the final answer to the "
    "request.\n\nRequest: {query}\n\n{steps}\n\nFinal answer:"
)


def format_planner_prompt(query: str, tasks: dict[str, str], max_steps: int, auto: bool) -> str:
    task_list = "; ".join(f"{name} ({description})" if description else name for name, description in tasks.items())
    names = list(tasks) or ["general"]
    return PLANNER_PROMPT.format(task_list=task_list, query=query, max_steps=max_steps,
                                 single_clause=SINGLE_CLAUSE_AUTO if auto else "",
                                 example_first=names[0], example_second=names[-1])


def format_steps(steps: list[tuple[str, str]]) -> str:
    """Earlier steps as the context of the next one (CCoE eq. 4: each output chained into the next input)."""
    return "\n\n".join(f"Step {i} ({text}) result:\n{output}" for i, (text, output) in enumerate(steps, start=1))


def format_synthesizer_prompt(query: str, steps: list[tuple[str, str]]) -> str:
    return SYNTHESIZER_PROMPT.format(query=query, steps=format_steps(steps))
