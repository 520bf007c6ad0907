# CUDA on demand. PySciML does not depend on CUDA.jl: the user adds it to the Julia environment once,
# before Julia starts (`pysciml.julia.add_cuda()` in a fresh Python process: juliapkg's resolve rewrites
# the manifest, which must not happen under packages already loaded). The first solve of a CUDA tensor
# calls `enable_cuda`, which loads it; loading CUDA.jl also loads DLPack.jl's CUDA extension, so CUDA
# tensors and CuArrays share memory. Unexercised: no GPU with Julia has run this path yet.
# torch and CUDA.jl use different streams: Julia synchronizes the device before handing an array to
# Python, and the Python callbacks synchronize torch's stream before returning.

const CUDA_PKGID = Base.PkgId(Base.UUID("052768ef-5323-5732-b1bb-66c8b64840ba"), "CUDA")

"`CUDA.synchronize`, once CUDA.jl is loaded; `nothing` before."
const DEVICE_SYNC = Ref{Any}(nothing)

"Whether CUDA.jl is installed in the active Julia environment (it may not be loaded yet)."
cuda_installed() = Base.locate_package(CUDA_PKGID) !== nothing

"""
    enable_cuda() -> true

Load CUDA.jl (it must be installed, see [`cuda_installed`](@ref)), check that it sees a GPU and that
DLPack.jl can describe a `CuArray` to torch. DLPack.jl 0.3's CUDA extension identifies device memory
by `CUDA.Mem.DeviceBuffer`, which CUDA.jl deprecated in 5.4; if that name is gone (or the buffer type
is not one it knows) sharing fails, and this says so instead of failing in the middle of a solve.
The torch-to-Julia direction and pointer identity are checked by the Python side afterwards
([`zero_copy_roundtrip`](@ref) on a CUDA tensor). None of this has been run on a GPU yet.
"""
function enable_cuda()
    cuda = Base.require(CUDA_PKGID)
    DEVICE_SYNC[] = getproperty(cuda, :synchronize)
    Base.invokelatest(getproperty(cuda, :functional)) || error(
        "PySciML: CUDA.jl is loaded but CUDA.functional() is false: no usable GPU or driver for Julia"
    )
    probe = Base.invokelatest(getproperty(cuda, :zeros), Float64, 1)
    device = try
        Base.invokelatest(DLPack.dldevice, probe)
    catch err
        error(
            "PySciML: DLPack.jl cannot share CUDA.jl arrays with torch with the installed versions " *
                "(its CUDA extension identifies device memory by CUDA.Mem.DeviceBuffer, deprecated " *
                "since CUDA.jl 5.4): $(sprint(showerror, err)). Solve on the CPU (u0.cpu()) or use " *
                "backend='torch', which runs on CUDA natively."
        )
    end
    device.device_type == DLPack.kDLCUDA || error(
        "PySciML: DLPack.jl describes CUDA.jl device memory as $(device.device_type), not kDLCUDA; " *
            "torch would misread it. Solve on the CPU (u0.cpu()) or use backend='torch'."
    )
    return true
end

"Synchronize the device that holds `A` (a no-op for CPU arrays)."
device_sync(::Array) = nothing
device_sync(A::AbstractArray) = parent(A) === A ? sync_device() : device_sync(parent(A))

function sync_device()
    sync = DEVICE_SYNC[]
    sync === nothing || Base.invokelatest(sync)
    return nothing
end
