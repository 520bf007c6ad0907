# CUDA on demand. PySciML does not depend on CUDA.jl: the Python side adds it to the Julia environment
# (through juliapkg) the first time a CUDA tensor is solved, then calls `enable_cuda`, which loads it;
# loading CUDA.jl also loads DLPack.jl's CUDA extension, so CUDA tensors and CuArrays share memory.
# torch and CUDA.jl use different streams: Julia synchronizes the device before handing an array to
# Python, and the Python callbacks synchronize torch's stream before returning.

const CUDA_PKGID = Base.PkgId(Base.UUID("052768ef-5323-5732-b1bb-66c8b64840ba"), "CUDA")

"`CUDA.synchronize`, once CUDA.jl is loaded; `nothing` before."
const DEVICE_SYNC = Ref{Any}(nothing)

"Whether CUDA.jl is installed in the active Julia environment (it may not be loaded yet)."
cuda_installed() = Base.locate_package(CUDA_PKGID) !== nothing

"""
    enable_cuda() -> true

Load CUDA.jl (it must be installed, see [`cuda_installed`](@ref)) and check that it sees a GPU.
"""
function enable_cuda()
    cuda = Base.require(CUDA_PKGID)
    DEVICE_SYNC[] = getproperty(cuda, :synchronize)
    Base.invokelatest(getproperty(cuda, :functional)) || error(
        "PySciML: CUDA.jl is loaded but CUDA.functional() is false: no usable GPU or driver for Julia"
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
