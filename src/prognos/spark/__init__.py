"""Fleet scale: the feature pipeline and the model bundle run per asset group on Apache Spark.

The only package that imports ``pyspark`` (an optional extra: ``pip install prognos[spark]``),
always inside functions: the rest of prognos runs without Spark or Java. Nothing here
re-implements a feature or a prediction; each Spark task calls the fitted pipeline's or bundle's
own pandas methods on whole assets (:mod:`prognos.spark.groups`).
"""
