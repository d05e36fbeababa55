/* The VoSPI packet CRC check, compiled: one call checks every packet of a read.
 *
 * Optional (setup.py builds it where a C compiler and Python's headers are; capture/vospi.py
 * falls back to its numpy table without it). Why it exists: capture wakes once a frame with cold
 * caches, and the numpy table's four passes over a Lepton 3 frame (an 84 KB table, a 79 KB index)
 * cost ~200 us a frame there, about 0.5 points of a core at 26.5 Hz; this loop touches the
 * frame's bytes once and a 512-byte table (docs/PERFORMANCE.md, thirteenth pass).
 *
 * The CRC is CRC-16/XMODEM (x^16 + x^12 + x^5 + 1, initial value 0, as binascii.crc_hqx) over the
 * whole packet, with the ID's top nibble and the CRC field counted as zero (the datasheet's
 * masking; LEPTON_VOSPI.md). tests/test_vospi_crc.py holds this to capture.vospi.packet_crc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define PACKET_BYTES 164

static uint16_t table[256];

static void make_table(void)
{
    for (int byte = 0; byte < 256; byte++) {
        uint16_t crc = (uint16_t)(byte << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        table[byte] = crc;
    }
}

#define STEP(crc, byte) ((uint16_t)(((crc) << 8) ^ table[(((crc) >> 8) ^ (byte)) & 0xFF]))

/* Packets' CRCs LANES at a time: each byte's step waits on the one before it (a table lookup
 * and a shift, ~2 ns a byte alone), so independent packets side by side keep the CPU busy. */
#define LANES 8

static void check_packets(const uint8_t *packet, Py_ssize_t count, char *out)
{
    Py_ssize_t i = 0;
    for (; i + LANES <= count; i += LANES, packet += LANES * PACKET_BYTES) {
        uint16_t crc[LANES];
        for (int k = 0; k < LANES; k++) {
            const uint8_t *p = packet + k * PACKET_BYTES;
            crc[k] = STEP(STEP(STEP(STEP(0, p[0] & 0x0F), p[1]), 0), 0);
        }
        for (int j = 4; j < PACKET_BYTES; j++)
            for (int k = 0; k < LANES; k++)
                crc[k] = STEP(crc[k], packet[k * PACKET_BYTES + j]);
        for (int k = 0; k < LANES; k++) {
            const uint8_t *p = packet + k * PACKET_BYTES;
            out[i + k] = crc[k] == (uint16_t)(p[2] << 8 | p[3]);
        }
    }
    for (; i < count; i++, packet += PACKET_BYTES) {
        uint16_t crc = STEP(STEP(STEP(STEP(0, packet[0] & 0x0F), packet[1]), 0), 0);
        for (int j = 4; j < PACKET_BYTES; j++)
            crc = STEP(crc, packet[j]);
        out[i] = crc == (uint16_t)(packet[2] << 8 | packet[3]);
    }
}

static PyObject *check(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*:check", &view))
        return NULL;
    if (view.len % PACKET_BYTES) {
        PyErr_Format(PyExc_ValueError, "%zd bytes are not whole %d-byte packets", view.len,
                     PACKET_BYTES);
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t count = view.len / PACKET_BYTES;
    PyObject *flags = PyByteArray_FromStringAndSize(NULL, count);
    if (flags != NULL)
        check_packets((const uint8_t *)view.buf, count, PyByteArray_AS_STRING(flags));
    PyBuffer_Release(&view);
    return flags;
}

static PyMethodDef methods[] = {
    {"check", check, METH_VARARGS,
     "check(packets) -> bytearray: for each 164-byte packet of the C-contiguous buffer, 1 if\n"
     "its CRC field holds its CRC, else 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_vospi_crc", "The VoSPI packet CRC check, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__vospi_crc(void)
{
    make_table();
    return PyModule_Create(&module);
}
