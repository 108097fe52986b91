"""Generated demo and benchmark data sets (synthetic tables, scenes for captioning and QA, espeak-ng speech).

Not part of the data pipeline: nothing in polymodal imports these modules except the CLI's demo commands; they
write ordinary tables and files that the pipeline then reads like any other data.
"""
