//! Chat templates (Jinja, rendered with minijinja). Being written.
