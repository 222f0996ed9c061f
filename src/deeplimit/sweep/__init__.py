"""deeplimit.sweep"""
