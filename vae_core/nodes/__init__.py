"""What the KNIME node scripts call: one function per node (``steps``; the experiments
workflow's node in ``experiments``).
"""
