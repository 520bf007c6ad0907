# Zero-copy views between torch tensors and Julia arrays, both ways, through DLPack.jl.
#
# Layout: torch is row-major, Julia column-major, so a tensor of shape (d1, ..., dk) is seen by Julia
# with its dimensions reversed, (dk, ..., d1), and vice versa. pysciml only passes 1-D state vectors,
# (S, n) blocks (an n × S matrix in Julia: one column per save point) and Jacobians (handled in
# callbacks.jl, where the transpose is accounted for).

"`torch.from_dlpack`, looked up on first use (never during precompilation)."
const TORCH_FROM_DLPACK = PythonCall.pynew()

function torch_from_dlpack()::Py
    if PythonCall.pyisnull(TORCH_FROM_DLPACK)
        PythonCall.pycopy!(TORCH_FROM_DLPACK, pyimport("torch").from_dlpack)
    end
    return TORCH_FROM_DLPACK
end

"""
    jlview(x) -> AbstractArray

Zero-copy Julia array over the memory of the torch tensor `x` (any Python object exposing
`__dlpack__`; pysciml wraps tensors so that juliacall hands them over as plain `Py`). CPU tensors give
`Array`s, CUDA tensors `CuArray`s (after [`enable_cuda`](@ref)). The tensor is kept alive as long as
the returned array.
"""
jlview(x) = DLPack.from_dlpack(Py(x))

"Element types a Python callback can receive: torch dtypes float32 and float64."
const TorchFloat = Union{Float32, Float64}

"""
    shareable(A) -> Bool

Whether DLPack.jl shares exactly the memory of `A`: dense arrays, and strided views or reshapes of CPU
arrays (for views of GPU arrays DLPack.jl shares the whole parent, so those must be copied).
"""
shareable(A::AbstractArray) = A isa DenseArray || (A isa StridedArray && parent(A) isa Array)

"""
    torchview(A) -> Py

Zero-copy torch tensor over the Julia array `A` (`Float32`/`Float64`, see [`shareable`](@ref)).
The array is kept alive until the tensor is freed.
"""
function torchview(A::AbstractArray{T}) where {T}
    T <: TorchFloat || throw(ArgumentError(
        "PySciML: a Julia routine tried to pass $(T) numbers to a Python function. Julia's automatic " *
        "differentiation cannot see through Python code; derivatives must come from torch (the jac, " *
        "tgrad, vjp and vjp_p callbacks) and solvers must use autodiff = AutoFiniteDiff()."
    ))
    shareable(A) || throw(ArgumentError("PySciML: cannot share a $(typeof(A)) with torch; copy it first"))
    device_sync(A)
    return DLPack.share(A, torch_from_dlpack())
end

"""
    ViewCache(maxlen = 256)

Torch views of the arrays a solve hands to its Python callbacks, keyed by address, size, strides and
element type. A solver cycles through a fixed set of cache arrays, so after the first steps every
callback finds its views here instead of creating a DLPack capsule per call. A cached view keeps its
array alive (DLPack.jl's share pool), so no other array can take its address while the entry exists.
The cache is emptied when it holds `maxlen` views (solvers that allocate per call, e.g. out-of-place
code in an adjoint, would otherwise grow it).
"""
struct ViewCache
    views::Dict{Tuple{UInt, Tuple{Vararg{Int}}, Tuple{Vararg{Int}}, DataType}, Py}
    maxlen::Int
end

ViewCache(maxlen::Integer = 256) =
    ViewCache(Dict{Tuple{UInt, Tuple{Vararg{Int}}, Tuple{Vararg{Int}}, DataType}, Py}(), Int(maxlen))

function torchview(cache::ViewCache, A::AbstractArray{T}) where {T}
    (T <: TorchFloat && shareable(A)) || return torchview(A)  # throws, saying why
    key = (UInt(pointer(A)), size(A), strides(A), T)
    view = get(cache.views, key, nothing)
    if view === nothing
        length(cache.views) >= cache.maxlen && empty!(cache.views)
        view = torchview(A)
        cache.views[key] = view
    else
        device_sync(A)
    end
    return view
end

"""
    zero_copy_roundtrip(x) -> (input_pointer, tensor, tensor_pointer)

Self-check of the DLPack path used everywhere else: views the torch tensor `x` from Julia (returning
the address Julia sees, to compare with `x.data_ptr()`), then shares a fresh Julia vector back to
torch (returning the tensor and the Julia address, to compare with `tensor.data_ptr()`).
"""
function zero_copy_roundtrip(x)
    A = jlview(x)
    B = similar(A, length(A))
    B .= vec(A) .+ one(eltype(A))
    return (UInt(pointer(A)), torchview(B), UInt(pointer(B)))
end
