# Lets `python -m pytest` import avgpool_plugin from this folder before it is installed.
