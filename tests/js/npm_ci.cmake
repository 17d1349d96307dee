# npm_ci.cmake -- runs `npm ci` in DIR unless its node_modules already matches package-lock.json.
#   cmake -DNPM=/usr/bin/npm -DDIR=/path/to/tests/js -P npm_ci.cmake
# npm writes node_modules/.package-lock.json on every install: when it is newer than the
# committed lockfile, the packages are the locked ones and nothing is fetched.
set(stamp "${DIR}/node_modules/.package-lock.json")
if(EXISTS "${stamp}" AND NOT "${DIR}/package-lock.json" IS_NEWER_THAN "${stamp}")
  message(STATUS "npm: ${DIR}/node_modules matches package-lock.json")
  return()
endif()
message(STATUS "npm ci in ${DIR}")
execute_process(COMMAND "${NPM}" ci --no-audit --no-fund
                WORKING_DIRECTORY "${DIR}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "npm ci failed in ${DIR} (status ${rc})")
endif()
