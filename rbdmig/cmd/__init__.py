"""The rbdmig command line."""
