"""futures"""
