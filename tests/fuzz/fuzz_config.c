/*
 * libFuzzer target for the configuration loader: the input is written to
 * an in-memory file and loaded; any outcome but a crash, a leak or an
 * error message without "FILE:LINE"/"FILE:" is fine.
 */
#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char		 path[64], err[1024];
	struct config	*cf;
	int		 fd;

	if (len > 65536)
		return 0;
	if ((fd = memfd_create("fuzzconf", MFD_CLOEXEC)) == -1)
		abort();
	if (write(fd, data, len) != (ssize_t)len)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	cf = config_load(path, err, sizeof(err));
	if (cf == NULL) {
		if (strncmp(err, path, strlen(path)) != 0)
			abort();	/* every error names the file */
	} else {
		if (cf->nvms == 0 || cf->nuris == 0 || cf->base_topic == NULL)
			abort();	/* validated configs are complete */
		for (size_t i = 0; i < cf->nvms; i++)
			if (strcmp(cf->vms[i].name, "bridge") == 0)
				abort();
		config_free(cf);
	}
	close(fd);
	return 0;
}
