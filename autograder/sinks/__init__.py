"""Student-chosen text on its way out: escaped for terminals and spreadsheets, sanitised for browsers."""
