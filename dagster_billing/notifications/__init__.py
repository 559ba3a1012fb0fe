"""Customer notifications: templates, rendering, channels and the delivery log.

Reads only billing events (the outbox); invoicing and payments never import it.
"""
