"""Taking the money: Stripe customers and payment methods, charges, reconciliation,
dunning, webhooks, refunds and credit notes. Plain functions over a connection (or an
engine where a Stripe call must sit between two transactions); Stripe is reached only
through the `PaymentGateway` protocol, implemented in `resources/stripe.py`."""


class PaymentError(Exception):
    """Bad input or a refused change, phrased as `field: what is wrong`."""
