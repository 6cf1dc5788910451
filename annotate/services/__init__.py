"""Business rules. Faces (pages, API, commands, tasks) call these; they never hold rules."""
