# cmake/StaticRuntime.cmake — mova_link_runtime_statically(<executable>): the executable takes Abseil, libstdc++
# and libgcc from their static archives instead of their shared objects.
#
# Why: a long-running service's own pages count in its RSS. Linked to Debian's shared Abseil, mova-kv maps ~40
# shared objects (each with its own headers, relocations and data pages) beside libstdc++.so: 6.2 MB resident
# at idle. From the archives the linker takes only the members the program uses and lays them out in one
# binary: 4.5 MB (measured side by side, bench/RESULTS.md "mova-kv against redis-server").
# The archives come from the packages the build already needs (libabsl-dev ships both forms; libstdc++-12-dev
# is g++'s). Where an archive is missing the executable links the shared objects as before, with a message.
# Only for executables built without sanitizers (a sanitizer runtime must see the shared libstdc++), and only
# for programs, never for libmova.so: a library that embeds its own copy of Abseil would hand its users a
# second absl::Status.
#
# How: the walk collects every Abseil target in the executable's link closure (through the project's static
# libraries, whose private dependencies appear as $<LINK_ONLY:...>); the executable then links the project's
# static libraries and those archives in one --start-group/--end-group, before the shared objects CMake still
# lists after them, and --as-needed drops every shared object nothing references any more.

function(_mova_link_closure out)
  set(seen "")
  set(todo ${ARGN})
  while(todo)
    list(POP_FRONT todo item)
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" item "${item}")
    if(NOT TARGET "${item}" OR "${item}" IN_LIST seen)
      continue()
    endif()
    list(APPEND seen "${item}")
    get_target_property(type "${item}" TYPE)
    get_target_property(imported "${item}" IMPORTED)
    get_target_property(deps "${item}" INTERFACE_LINK_LIBRARIES)
    if(deps)
      list(APPEND todo ${deps})
    endif()
    if(NOT imported AND NOT type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(deps "${item}" LINK_LIBRARIES)
      if(deps)
        list(APPEND todo ${deps})
      endif()
    endif()
  endwhile()
  set(${out} "${seen}" PARENT_SCOPE)
endfunction()

# The shared object an imported target names, for the configuration it was imported with.
function(_mova_imported_location target out)
  get_target_property(location "${target}" IMPORTED_LOCATION)
  if(NOT location)
    get_target_property(configs "${target}" IMPORTED_CONFIGURATIONS)
    foreach(config IN LISTS configs)
      get_target_property(location "${target}" IMPORTED_LOCATION_${config})
      if(location)
        break()
      endif()
    endforeach()
  endif()
  set(${out} "${location}" PARENT_SCOPE)
endfunction()

function(mova_link_runtime_statically target)
  get_target_property(direct "${target}" LINK_LIBRARIES)
  _mova_link_closure(closure ${direct})
  set(project_archives "")
  set(absl_archives "")
  foreach(item IN LISTS closure)
    get_target_property(type "${item}" TYPE)
    get_target_property(imported "${item}" IMPORTED)
    if(NOT imported AND type STREQUAL "STATIC_LIBRARY")
      list(APPEND project_archives "${item}")
    elseif(imported AND type STREQUAL "SHARED_LIBRARY" AND item MATCHES "^absl::")
      _mova_imported_location("${item}" shared)
      string(REGEX REPLACE "\\.so(\\.[0-9.]+)?$" ".a" archive "${shared}")
      if(NOT shared OR NOT EXISTS "${archive}")
        message(STATUS "${target}: no static archive beside ${shared}; Abseil stays shared")
        return()
      endif()
      list(APPEND absl_archives "${archive}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES absl_archives)
  target_link_libraries("${target}" PRIVATE -Wl,--start-group ${project_archives} ${absl_archives} -Wl,--end-group)
  target_link_options("${target}" PRIVATE -static-libstdc++ -static-libgcc LINKER:--as-needed)
  list(LENGTH absl_archives n)
  message(STATUS "${target}: Abseil (${n} archives), libstdc++ and libgcc linked statically")
endfunction()
