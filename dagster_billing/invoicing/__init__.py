"""Invoicing: drafts from the rating marts become numbered, immutable invoices and PDFs.

The modules are plain functions over a SQLAlchemy connection, so the Dagster assets, the
CLI and the benchmark share them: `marts` reads the draft contract (docs/invoice-marts.md),
`finalize` writes invoices, `lifecycle` moves them on, `checks` verifies them, `document`
and `pdf` render them.
"""


class InvoicingError(Exception):
    """A draft or an invoice that cannot be processed, phrased as `field: what is wrong`."""
