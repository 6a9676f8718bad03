"""One package per paper of the study; see schedule.md."""
