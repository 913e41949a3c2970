"""Tables, figures and (later) appendices, made only from metric rows."""
