"""Start-up, without torch: config names checked against the registries, options resolved once."""
