"""The data recipes: each turns a public source into documents or records (``tagsmith data fetch NAME``)."""


class RecipeError(RuntimeError):
    """A recipe cannot produce its data (source missing or unreachable, a bad local copy, a changed package); the
    message says what to do about it."""
