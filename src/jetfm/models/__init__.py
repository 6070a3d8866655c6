"""jetfm.models"""
