"""One handler per kind of inbound mail, called by the routing table."""
