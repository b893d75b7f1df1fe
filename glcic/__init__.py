"""glcic's support modules: what keeps the scripts at the top level short (README: Layout)."""
