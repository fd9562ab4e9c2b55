"""Actions: thin modules that log and delegate to the repository, transport and policy."""
