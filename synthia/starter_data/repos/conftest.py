# The directories here are sample repositories that the dataset generator copies and runs in a
# temporary directory; their tests are not part of this project's test suite.
collect_ignore_glob = ["*"]
