"""Writing BIDS-Derivatives: each session's outputs, named, copied and described."""
