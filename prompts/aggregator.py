"""The aggregator's refine prompt: several experts answered the same question; write one answer from them.

Placeholders: {question}, {answers} ("Expert NAME:\\nANSWER" blocks, best-ranked first).
"""

REFINE_PROMPT = (
    "Several experts answered the same question. Combine their answers into one correct, complete answer. "
    "Prefer what the experts agree on; when they disagree, prefer the expert listed first.\n\n"
    "Question: {question}\n\n{answers}\n\nFinal answer:"
)


def format_refine_prompt(question: str, answers: list[tuple[str, str]]) -> str:
    blocks = "\n\n".join(f"Expert {name}:\n{answer}" for name, answer in answers)
    return REFINE_PROMPT.format(question=question, answers=blocks)
