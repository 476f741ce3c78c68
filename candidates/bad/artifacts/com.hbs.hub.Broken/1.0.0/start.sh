#!/bin/sh
# com.hbs.hub.Broken's Startup: always fails (the harness's negative test).
echo "com.hbs.hub.Broken starting"
echo "cannot start, exiting 1" >&2
exit 1
