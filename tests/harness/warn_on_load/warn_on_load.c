// SPDX-License-Identifier: GPL-2.0-only
/*
 * A deliberately broken module for the harness self-test: it WARNs on load,
 * and the harness must fail the run and show the warning.
 */
#include <linux/module.h>
#include <linux/bug.h>

static int __init warn_on_load_init(void)
{
	WARN(1, "npu harness self-test: deliberate warning\n");
	return 0;
}

static void __exit warn_on_load_exit(void)
{
}

module_init(warn_on_load_init);
module_exit(warn_on_load_exit);
MODULE_DESCRIPTION("Harness self-test: WARN on load");
MODULE_LICENSE("GPL");
