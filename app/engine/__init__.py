"""The pure part: workflow definitions, their validation, templating and routing. No I/O here."""
