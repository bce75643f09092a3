/* tests/install/c_consumer/dlopen_main.c — loads a shared object built from the consumer and libmova.a (what a
 * Redis module or a Python extension is) and runs it: libmova.a must be position-independent for that. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (plugin == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  int (*run)(void) = (int (*)(void))dlsym(plugin, "run_consumer");
  if (run == NULL) return 1;
  const int rc = run();
  dlclose(plugin);
  return rc;
}
