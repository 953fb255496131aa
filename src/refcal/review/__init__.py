"""Human review: the queue, the page, and the labels that flow back into the judges."""
