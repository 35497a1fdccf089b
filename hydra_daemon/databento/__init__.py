"""databento"""
