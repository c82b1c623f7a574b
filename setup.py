"""Packaging from settings.ini, as nbdev 2.4's template does it."""
from configparser import ConfigParser
from pathlib import Path
import shutil, setuptools, shlex
from setuptools.command.build_py import build_py

class BuildWithStageNotebooks(build_py):
    "Package the stage notebooks (nbs/stages/*.ipynb) as mlprep/stage_notebooks and pipelines/*.yaml as mlprep/pipelines, so an installed mlprep can run them."
    def run(self):
        super().run()
        dest = Path(self.build_lib)/'mlprep'/'stage_notebooks'
        dest.mkdir(parents=True, exist_ok=True)
        for nb in sorted(Path('nbs/stages').glob('*.ipynb')): shutil.copy2(nb, dest/nb.name)
        pipes = Path(self.build_lib)/'mlprep'/'pipelines'       # the shipped pipeline YAMLs (the Snakefile is package data)
        pipes.mkdir(parents=True, exist_ok=True)
        for y in sorted(Path('pipelines').glob('*.yaml')): shutil.copy2(y, pipes/y.name)

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
for k in 'version description keywords author author_email'.split(): assert k in cfg, f'settings.ini is missing {k}'

def reqs(key): return shlex.split(cfg.get(key, '').replace('\n', ' '))

setuptools.setup(
    name=cfg['lib_name'], license='Apache-2.0', classifiers=['Programming Language :: Python :: 3'],
    url=cfg['git_url'], packages=setuptools.find_packages(include=['mlprep', 'mlprep.*']),
    include_package_data=True, install_requires=reqs('requirements'),
    extras_require={'dev': reqs('dev_requirements'), 'gpu': reqs('gpu_requirements'), 'docs': reqs('docs_requirements')},
    dependency_links=cfg.get('dep_links', '').split(), python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    zip_safe=False, cmdclass={'build_py': BuildWithStageNotebooks}, entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                                  'nbdev': [f"{cfg.get('lib_path')}={cfg.get('lib_path')}._modidx:d"]},
    version=cfg['version'], description=cfg['description'], keywords=cfg['keywords'],
    author=cfg['author'], author_email=cfg['author_email'])
