/* tests/install/c_consumer/main.c — the C consumer as a program. */
int run_consumer(void);
int main(void) { return run_consumer(); }
