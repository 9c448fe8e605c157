"""A member hello does not need: it must not ship in hello's image."""
