"""The desktop app: the only package that imports Qt.

views/        lay widgets out and emit what the user asks for; they never call the engine
controllers/  react to views, hand work to workers, and show results
workers/      QThreads: one owns the engine, others download models
"""
