"""structs"""
