"""What a request cost: every model call's tokens times its model's prices.

Prices come from the config: `price_per_1m_tokens` (one price for input and output), or
`input_price_per_1m_tokens` / `output_price_per_1m_tokens`. A request that called a model without a price has no
total (`dollars: null`, the model named in `unpriced`): counting it as free would make an expensive route look
cheap.
"""

from __future__ import annotations

from typing import NamedTuple

from coe_router.config import RouterConfig


class TokenPrice(NamedTuple):
    input: float  # dollars per 1M input tokens
    output: float


def model_price(spec) -> TokenPrice | None:
    """A model spec's prices, or None when it has none."""
    single = spec.price_per_1m_tokens
    given_in, given_out = spec.input_price_per_1m_tokens, spec.output_price_per_1m_tokens
    if single is None and given_in is None and given_out is None:
        return None
    return TokenPrice(given_in if given_in is not None else single or 0.0,
                      given_out if given_out is not None else single or 0.0)


def call_prices(config: RouterConfig) -> dict[str, TokenPrice | None]:
    """Prices by the names a model call is known under: the expert, the config's model name, the endpoint's model
    id (calls outside an expert, e.g. the classifier or planner, carry only the last)."""
    prices: dict[str, TokenPrice | None] = {}
    for name, spec in config.models.items():
        price = model_price(spec)
        upstream = getattr(spec, "model", None)
        if upstream:
            prices.setdefault(upstream, price)
        prices[name] = price
    for name, expert in config.experts.items():
        prices[name] = model_price(config.models[expert.model])
    return prices


def request_cost(by_model: dict[str, list[int]], prices: dict[str, TokenPrice | None]) -> dict:
    """{"dollars": total or None, "by_model": {caller: dollars or None}, "unpriced": [callers]}."""
    spent: dict[str, float | None] = {}
    for caller, (tokens_in, tokens_out) in sorted(by_model.items()):
        if not tokens_in and not tokens_out:
            continue
        price = prices.get(caller)
        spent[caller] = None if price is None else round(
            (tokens_in * price.input + tokens_out * price.output) / 1_000_000, 9)
    unpriced = [caller for caller, dollars in spent.items() if dollars is None]
    total = None if unpriced else round(sum(v for v in spent.values() if v is not None), 9)
    return {"dollars": total, "by_model": spent, "unpriced": unpriced}


def cost_header(cost: dict) -> str:
    """x-coe-cost: dollars with 9 decimals, or `unpriced` naming what had no price."""
    if cost["dollars"] is None:
        return "unpriced:" + ",".join(cost["unpriced"])
    return f"{cost['dollars']:.9f}"
