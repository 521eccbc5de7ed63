"""What the KNIME node scripts call: one function per node (``steps``).
"""
