"""The in-container runner and the line protocol it speaks with the worker."""
