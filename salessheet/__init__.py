"""salessheet: sales tracking that lives in spreadsheets."""
from .book import Book
from .errors import Error, MissingTableError, ReadError, ValidationError
from .issues import Issue
from .reader import read_workbook
from .validate import validate

__version__ = "0.1.0"
__all__ = ["Book", "Error", "Issue", "MissingTableError", "ReadError", "ValidationError", "read_workbook",
           "validate", "__version__"]
