"""Operator commands of `dicomstore`: operations, import and export, and bulk upload over HTTP."""
