#!/usr/bin/env bash
# The main job on the embedded default configuration. Extra arguments go to `mlprep demo`.
source "$(dirname "$0")/_env.sh"
exec mlprep demo "$@"
