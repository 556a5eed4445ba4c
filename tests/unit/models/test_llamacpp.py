"""The plain transcript that base models (no chat template) continue."""

from coe_router.models.llamacpp import _TRANSCRIPT_STOPS, _transcript
from coe_router.prompts.expert import BASE_MODEL_PREAMBLE


def test_transcript_puts_system_text_first_then_worked_turns_then_the_question():
    text = _transcript([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}])
    assert text.startswith("Be brief.\n\n" + BASE_MODEL_PREAMBLE)
    assert text.endswith("Question: What is 2+2?\nAnswer:")


def test_transcript_keeps_earlier_turns_in_order():
    text = _transcript([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                        {"role": "user", "content": "and now?"}])
    assert text.index("Question: hi") < text.index("Answer: hello") < text.index("Question: and now?")


def test_worked_turns_do_not_contain_a_stop_sequence_the_model_would_hit_at_once():
    assert BASE_MODEL_PREAMBLE.count("\nQuestion:") == 1   # between the two turns, never right before the answer
    assert "\n\n\n" not in BASE_MODEL_PREAMBLE and not BASE_MODEL_PREAMBLE.endswith("\n")
    assert all(stop not in "Answer:" for stop in _TRANSCRIPT_STOPS)
