# bench/vm: the headline benchmark (`sudo ./bench/vm --perf`). It links
# libhakmem.a statically, so the library's USDT probes (sdt_hakmem:flush_begin...)
# are in the bench/vm binary itself, next to its own scenario probes.

VM_SRCS := bench/vm.c $(wildcard bench/vm_*.c)
VM_OBJS := $(VM_SRCS:%.c=$(BUILD)/%.o)

$(VM_OBJS): $(BUILD)/%.o: %.c bench/vm.h $(LIB_HDRS) $(wildcard perf/*.h) | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ilib -Iio -Iperf -c $< -o $@

bench/vm: $(VM_OBJS) $(PERF_OBJS) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $(VM_OBJS) $(PERF_OBJS) $(HAK_LINK) $(PERF_LIBS) -lm

all: bench/vm
CLEAN_EXTRA += bench/vm
TEST_EXTRA_DEPS += bench/vm
