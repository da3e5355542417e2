"""An incident's life in time: deadlines, reminders, timeliness, cadence, notices."""
