"""Each gateway's own minor units, against ISO 4217's (pure; no I/O).

paysaga stores money as ISO 4217 minor units (`domain.money`). A gateway's API takes and
reports integer amounts in *its* unit for a currency, which is not always ISO's: Stripe
charges MGA in whole ariary (ISO: two decimals) and ISK in hundredths of a króna (ISO: none).
`to_gateway` turns our amount into the gateway's integer, or raises `NotRepresentable` where the
gateway cannot take exactly that amount; `from_gateway` turns what a gateway reports (a webhook,
a look-up, a refund) back into ISO minor units, or raises where it has no exact ISO amount.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.money import iso_exponent


class NotRepresentable(ValueError):
    """The gateway cannot charge (or we cannot store) exactly this amount in this currency."""


@dataclass(frozen=True)
class Rule:
    """How a gateway writes amounts of one currency: `exponent` decimals, and every amount a
    multiple of `step` in that unit (Stripe's ISK: hundredths, whole krónur only)."""

    exponent: int
    step: int = 1


# Stripe, https://docs.stripe.com/currencies (read 2025):
# - "Zero-decimal currencies": the amount is in whole units.
STRIPE_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
)
# - "Three-decimal currencies": "to ensure compatibility with Stripe's payments partners, these
#   API calls require the least-significant (last) digit to be 0" ("5.124 KWD must be rounded
#   to 5120 or 5130").
STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
# - "Special cases": ISK "becomes a zero-decimal currency. To maintain backwards
#   compatibility, you must pass in amounts with two decimals. The amount value must be evenly
#   divisible by 100" (support.stripe.com, deprecation of fractional ISK charges: "ISK will
#   remain a two-decimal currency in the Stripe API"). HUF and TWD: "Stripe treats HUF [TWD]
#   as a zero-decimal currency for payouts, even though you can charge two-decimal amounts":
#   charges are ordinary two-decimal amounts, so nothing to convert here. UGX is in the
#   zero-decimal list above; its special case, like HUF's, concerns payouts.
STRIPE_WHOLE_UNITS_IN_HUNDREDTHS = frozenset({"ISK"})


def stripe_rule(currency: str) -> Rule:
    """Every other currency is two-decimal at Stripe ("unless otherwise specified")."""
    code = currency.upper()
    if code in STRIPE_ZERO_DECIMAL:
        return Rule(0)
    if code in STRIPE_THREE_DECIMAL:
        return Rule(3, step=10)
    if code in STRIPE_WHOLE_UNITS_IN_HUNDREDTHS:
        return Rule(2, step=100)
    return Rule(2)


def razorpay_rule(currency: str) -> Rule:
    """Razorpay takes "the smallest currency sub-unit" (https://razorpay.com/docs/api/orders/
    entity): two decimals as usual, zero-decimal currencies such as JPY in whole units, and
    three-decimal ones (KWD, BHD, OMR) in thousandths, where "as per payment guidelines, you
    should pass the last decimal number as 0" (99.991 KD is refused, 99.990 is 99990). That is
    ISO 4217's exponent, with the last digit 0 for three decimals."""
    exponent = iso_exponent(currency)
    return Rule(exponent, step=10 if exponent == 3 else 1)


def iso_rule(currency: str) -> Rule:
    """A gateway that speaks ISO 4217 minor units as they are (the standard webhooks)."""
    return Rule(iso_exponent(currency))


RULES = {"stripe": stripe_rule, "razorpay": razorpay_rule}


def rule(gateway: str, currency: str) -> Rule:
    return RULES.get(gateway, iso_rule)(currency)


def _scale(digits: int) -> int:
    return int(10**digits)  # digits >= 0 here; int() for mypy, which types ** on ints as Any


def to_gateway(gateway: str, amount: int, currency: str) -> int:
    """Our ISO minor units as the gateway's integer amount, exactly, or NotRepresentable."""
    iso, theirs = iso_exponent(currency), rule(gateway, currency)
    shift = theirs.exponent - iso
    if shift >= 0:
        converted = amount * _scale(shift)
    else:
        converted, rest = divmod(amount, _scale(-shift))
        if rest:
            raise NotRepresentable(
                f"{gateway} takes {currency.upper()} with {theirs.exponent} decimals; "
                f"{amount} minor units ({iso} decimals) is not a whole amount there"
            )
    if converted % theirs.step:
        raise NotRepresentable(
            f"{gateway} takes {currency.upper()} only in steps of {theirs.step} of its unit "
            f"(10^-{theirs.exponent}); {amount} minor units is not one"
        )
    return converted


def from_gateway(gateway: str, amount: int, currency: str) -> int:
    """What a gateway reports, in ISO minor units, exactly, or NotRepresentable."""
    iso, theirs = iso_exponent(currency), rule(gateway, currency)
    shift = theirs.exponent - iso
    if shift <= 0:
        return amount * _scale(-shift)
    converted, rest = divmod(amount, _scale(shift))
    if rest:
        raise NotRepresentable(
            f"{gateway} reported {amount} in {currency.upper()} ({theirs.exponent} decimals), "
            f"which is not a whole ISO 4217 amount ({iso} decimals)"
        )
    return converted
