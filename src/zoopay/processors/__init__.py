"""Payment processors: where money is actually taken (embedded, or Stripe)."""
