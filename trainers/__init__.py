"""trainers: see README.md."""
